// The shape a JSON file can have for a TypeScript type: the same fields, with every
// string enum widened to the strings it stands for (a JSON file holds "absolute", it
// cannot name ThresholdsMode.Absolute). Nothing else is loosened: unknown fields,
// wrong types and missing required fields are still errors.
export type JsonOf<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends Array<infer Item>
      ? Array<JsonOf<Item>>
      : T extends object
        ? { [K in keyof T]: JsonOf<T[K]> }
        : T;
