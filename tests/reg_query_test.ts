import { equal } from "node:assert/strict";
import { regQueryValue } from "../src/telemetry/reg_query.ts";
import { telemetryFixture } from "./_support/helpers.ts";

Deno.test("regQueryValue reads one line: an empty value is null, never the next line", () => {
  const wine = telemetryFixture("wine_reg_bios.txt");
  for (const name of ["SystemManufacturer", "SystemProductName", "SystemVersion", "BIOSVendor"]) {
    equal(regQueryValue(wine, name), null, name);
  }
  equal(regQueryValue(wine, "BiosMajorRelease", "REG_DWORD"), "0xff");
  // Of another type than asked: not a string value.
  equal(regQueryValue(wine, "BiosMajorRelease"), null);
  const windows = telemetryFixture("windows_reg_bios.txt");
  equal(regQueryValue(windows, "SystemManufacturer"), "Dell Inc.");
  // Names compare case-insensitively, as the registry does; a prefix is not the name.
  equal(regQueryValue(windows, "systemproductname"), "Latitude 7420");
  equal(regQueryValue(windows, "System"), null);
  equal(regQueryValue(windows, "SystemSKU"), "0A8C");
});

Deno.test("regQueryValue keeps inner blanks and reads the last line without a line end", () => {
  equal(
    regQueryValue("    ProductName    REG_SZ    Windows 10 Pro  ", "ProductName"),
    "Windows 10 Pro",
  );
  equal(regQueryValue("    TimeZoneKeyName    REG_SZ", "TimeZoneKeyName"), null);
  equal(regQueryValue("", "TimeZoneKeyName"), null);
});

Deno.test("regQueryValue on Wine's reg.exe: a missing key prints an error line, which is null", () => {
  equal(regQueryValue(telemetryFixture("wine_reg_missing_key.txt"), "MachineGuid"), null);
  equal(
    regQueryValue(telemetryFixture("wine_reg_machineguid.txt"), "MachineGuid"),
    "9e373f00-2e76-424d-97f5-67b986a38d76",
  );
});
