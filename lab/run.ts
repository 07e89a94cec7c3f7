/** Running a command to completion, for the lab, the tests and the bench. */

export interface CommandOutput {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `argv` to completion with its output collected. A command that cannot start (not
 * installed) reads as exit 127 with the reason on stderr, as a shell would report it.
 */
export async function runCommand(
  argv: string[],
  options: { env?: Record<string, string>; stdin?: string } = {},
): Promise<CommandOutput> {
  const [command, ...args] = argv;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args,
      env: options.env,
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    return { code: 127, stdout: "", stderr: `${command}: ${(error as Error).message}` };
  }
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const output = await child.output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}
