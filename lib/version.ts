/** The version printed by `overlay version`, kept in step with deno.json. */
export const VERSION = "0.1.0";
