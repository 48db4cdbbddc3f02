// How a run's values read in its header: parameters as JSON, a result as where to find it.
import type { JsonObject } from "@bufbuild/protobuf";
import type { ResultReference } from "../gen/runwire/v1/state_pb";

/** Parameters as indented JSON, keys in the order the run was given them; "" when none. */
export function formatParameters(parameters: JsonObject | undefined): string {
  if (!parameters || Object.keys(parameters).length === 0) return "";
  return JSON.stringify(parameters, null, 2);
}

/** One line saying how many parameters and which, for the collapsed view. */
export function summarizeParameters(parameters: JsonObject | undefined, max = 4): string {
  const keys = parameters ? Object.keys(parameters) : [];
  if (keys.length === 0) return "none";
  const shown = keys.slice(0, max).join(", ");
  return keys.length > max ? `${shown}, +${keys.length - max} more` : shown;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export interface ResultView {
  serializer: string;
  /** Where the value is: a URI, or "inline" with its size. */
  where: string;
  /** A URI people can copy (inline values have none). */
  uri?: string;
}

/** Where a result can be read, never its bytes (they may be large, or a pickle). */
export function describeResult(result: ResultReference | undefined): ResultView | undefined {
  if (!result) return undefined;
  const serializer = result.serializer || "unknown serializer";
  switch (result.storage.case) {
    case "locationUri":
      return { serializer, where: result.storage.value, uri: result.storage.value };
    case "inlineValue":
      return { serializer, where: `inline, ${formatBytes(result.storage.value.length)}` };
    default:
      return result.serializer ? { serializer, where: "not stored" } : undefined;
  }
}
