<#
.SYNOPSIS
  Installs (or removes) the OneConnect agent as a boot-time scheduled task running as SYSTEM.

.DESCRIPTION
  A Deno binary is a console program: it does not speak the Service Control Manager protocol, so
  `sc.exe create` on it fails to start with error 1053. This script registers a scheduled task
  instead (no extra software):
    - trigger at startup, plus a 5-minute repetition: with MultipleInstances=IgnoreNew the
      repetition is a no-op while the agent runs and restarts it within 5 minutes after it exits
      (Task Scheduler's restart-on-failure reacts to a failure to start, not to an exit code);
    - runs as NT AUTHORITY\SYSTEM, with no execution time limit, on battery too;
    - stdout/stderr go to C:\ProgramData\OneConnect\Logs\agent.log through cmd.exe.
  Enroll first (as Administrator): & "<InstallDir>\oneconnect-agent.exe" enroll --url https://platform.example.com --token-file <path>
  For a real Windows service (services.msc, sc.exe query), use WinSW instead: see README.md here.

.EXAMPLE
  powershell -ExecutionPolicy Bypass -File install-service.ps1 -BinaryPath .\oneconnect-agent-windows-amd64.exe
.EXAMPLE
  powershell -ExecutionPolicy Bypass -File install-service.ps1 -Uninstall
#>
[CmdletBinding()]
param(
  [string]$BinaryPath = (Join-Path $PSScriptRoot 'oneconnect-agent-windows-amd64.exe'),
  [string]$InstallDir = (Join-Path $env:ProgramFiles 'OneConnect Agent'),
  [switch]$Uninstall
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$TaskName = 'OneConnect Agent'
$Exe = Join-Path $InstallDir 'oneconnect-agent.exe'
$LogDir = Join-Path $env:ProgramData 'OneConnect\Logs'

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
  throw 'Run this script from an elevated PowerShell (Run as Administrator).'
}

function Stop-Agent {
  if (Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue) {
    Stop-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
  }
  # Ending the task does not always end the child started by cmd.exe.
  Get-Process -Name 'oneconnect-agent' -ErrorAction SilentlyContinue |
    Where-Object { $_.Path -eq $Exe } |
    Stop-Process -Force -ErrorAction SilentlyContinue
}

if ($Uninstall) {
  Stop-Agent
  if (Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue) {
    Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false
  }
  Write-Output "Removed task '$TaskName'. The identity in $env:ProgramData\OneConnect\Agent is kept; run 'oneconnect-agent unenroll --yes' first to remove it."
  exit 0
}

if (-not (Test-Path -LiteralPath $BinaryPath -PathType Leaf)) {
  throw "Binary '$BinaryPath' not found; pass -BinaryPath <path to oneconnect-agent-windows-amd64.exe>."
}

Stop-Agent
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
Copy-Item -LiteralPath $BinaryPath -Destination $Exe -Force

# Logs may mention hostnames and platform URLs, and SYSTEM appends to agent.log: SYSTEM and
# Administrators only. Any user may create folders under ProgramData, so a folder (or its parent)
# that someone else created first is refused: its owner could plant agent.log as a link to a file
# of their choice, or grant themselves access again.
$SystemSid = New-Object Security.Principal.SecurityIdentifier('S-1-5-18')
$AdminsSid = New-Object Security.Principal.SecurityIdentifier('S-1-5-32-544')
$Icacls = Join-Path $env:SystemRoot 'System32\icacls.exe'

function Assert-OwnedByUs([string]$Path) {
  $owner = (Get-Acl -LiteralPath $Path).GetOwner([Security.Principal.SecurityIdentifier])
  if ($owner -ne $SystemSid -and $owner -ne $AdminsSid) {
    throw "Refusing '$Path': it is owned by $($owner.Value), not SYSTEM or Administrators; check its contents, then run: icacls `"$Path`" /setowner *S-1-5-32-544 /T /C"
  }
}

function Protect-AgentFolder([string]$Path) {
  $parent = Split-Path -LiteralPath $Path -Parent
  if (-not (Test-Path -LiteralPath $parent)) { New-Item -ItemType Directory -Path $parent | Out-Null }
  Assert-OwnedByUs $parent
  if (Test-Path -LiteralPath $Path) { Assert-OwnedByUs $Path } else { New-Item -ItemType Directory -Path $Path | Out-Null }
  & $Icacls $Path /setowner '*S-1-5-32-544' | Out-Null
  if ($LASTEXITCODE -ne 0) { throw "icacls /setowner failed on '$Path' (exit $LASTEXITCODE)." }
  & $Icacls $Path /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' | Out-Null
  if ($LASTEXITCODE -ne 0) { throw "icacls failed on '$Path' (exit $LASTEXITCODE)." }
  # /grant:r keeps other explicit entries: remove every one that is not SYSTEM or Administrators.
  $acl = Get-Acl -LiteralPath $Path
  foreach ($rule in @($acl.Access)) {
    $sid = $rule.IdentityReference.Translate([Security.Principal.SecurityIdentifier])
    if ($sid -ne $SystemSid -and $sid -ne $AdminsSid) { [void]$acl.RemoveAccessRuleAll($rule) }
  }
  Set-Acl -LiteralPath $Path -AclObject $acl
  # Read back: refuse unless only SYSTEM and Administrators remain and Administrators own it.
  $check = Get-Acl -LiteralPath $Path
  if ($check.GetOwner([Security.Principal.SecurityIdentifier]) -ne $AdminsSid) { throw "Owner of '$Path' is not Administrators after icacls /setowner." }
  foreach ($rule in @($check.Access)) {
    $sid = $rule.IdentityReference.Translate([Security.Principal.SecurityIdentifier])
    if ($sid -ne $SystemSid -and $sid -ne $AdminsSid) { throw "Refusing '$Path': its ACL still grants $($rule.IdentityReference)." }
  }
}

Protect-AgentFolder $LogDir

$version = & $Exe --version
if ($LASTEXITCODE -ne 0) { throw "'$Exe --version' failed (exit $LASTEXITCODE)." }

& $Exe status *> $null
if ($LASTEXITCODE -eq 5) {
  Write-Warning "The agent is not enrolled yet: run '$Exe enroll ...' as Administrator; the task will keep retrying until then."
}

$log = Join-Path $LogDir 'agent.log'
$action = New-ScheduledTaskAction -Execute "$env:SystemRoot\System32\cmd.exe" `
  -Argument "/d /c `"`"$Exe`" run >> `"$log`" 2>&1`"" `
  -WorkingDirectory $InstallDir
$atStartup = New-ScheduledTaskTrigger -AtStartup
$every5min = New-ScheduledTaskTrigger -Once -At (Get-Date) -RepetitionInterval (New-TimeSpan -Minutes 5)
$settings = New-ScheduledTaskSettingsSet `
  -MultipleInstances IgnoreNew `
  -ExecutionTimeLimit ([TimeSpan]::Zero) `
  -StartWhenAvailable `
  -AllowStartIfOnBatteries `
  -DontStopIfGoingOnBatteries `
  -RestartCount 999 `
  -RestartInterval (New-TimeSpan -Minutes 1)
$system = New-ScheduledTaskPrincipal -UserId 'NT AUTHORITY\SYSTEM' -LogonType ServiceAccount -RunLevel Highest

Register-ScheduledTask -TaskName $TaskName -Description 'OneConnect endpoint agent (telemetry heartbeats)' `
  -Action $action -Trigger @($atStartup, $every5min) -Settings $settings -Principal $system -Force | Out-Null
Start-ScheduledTask -TaskName $TaskName

Write-Output "Installed $version as scheduled task '$TaskName' (SYSTEM, at startup). Log: $log"
