/* Stand-in for Windows 10+'s bcryptprimitives.dll, which Wine 8.0 lacks (deno.exe imports its one
 * export, ProcessPrng), for running npm's @deno/win32-x64 under Wine in oneconnect-agent's
 * cross-target stage (.ci/cross_target.sh builds it with Debian's mingw-w64; docs/cross_targets.md).
 * Never shipped, never used on a real Windows machine.
 *
 * 1. ProcessPrng fills the buffer from bcrypt's system RNG (Wine's bcrypt uses the host's).
 * 2. When loaded (before V8 starts), it hides kernelbase's VirtualAlloc2 export from
 *    GetProcAddress by renaming it in memory to VirtualAlloc1 (same sort position): V8 then
 *    reports that it cannot reserve address space with placeholders (OS::CanReserveAddressSpace)
 *    and takes its own fallback for Windows versions without VirtualAlloc2, because Wine 8.0
 *    rejects MEM_RESERVE_PLACEHOLDER and V8 otherwise dies with "Fatal process out of memory:
 *    SegmentedTable::InitializeTable (subspace allocation)". deno.exe itself is not modified. */
#include <windows.h>
#include <bcrypt.h>
#include <string.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
  while (len > 0) {
    ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
    if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0) return FALSE;
    data += chunk;
    len -= chunk;
  }
  return TRUE;
}

static void hide_export(const char *module, const char *name, char replacement_last) {
  BYTE *base = (BYTE *)GetModuleHandleA(module);
  if (base == NULL) return;
  IMAGE_NT_HEADERS *nt = (IMAGE_NT_HEADERS *)(base + ((IMAGE_DOS_HEADER *)base)->e_lfanew);
  IMAGE_DATA_DIRECTORY dir = nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT];
  if (dir.VirtualAddress == 0) return;
  IMAGE_EXPORT_DIRECTORY *exports = (IMAGE_EXPORT_DIRECTORY *)(base + dir.VirtualAddress);
  DWORD *names = (DWORD *)(base + exports->AddressOfNames);
  for (DWORD i = 0; i < exports->NumberOfNames; i++) {
    char *entry = (char *)(base + names[i]);
    if (strcmp(entry, name) != 0) continue;
    size_t last = strlen(entry) - 1;
    DWORD old;
    if (VirtualProtect(entry + last, 1, PAGE_READWRITE, &old)) {
      entry[last] = replacement_last;
      VirtualProtect(entry + last, 1, old, &old);
    }
    return;
  }
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved) {
  (void)instance;
  (void)reserved;
  if (reason == DLL_PROCESS_ATTACH) hide_export("kernelbase.dll", "VirtualAlloc2", '1');
  return TRUE;
}
