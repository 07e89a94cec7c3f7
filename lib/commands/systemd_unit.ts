/** `overlay systemd-unit`: print the systemd unit for the agent. */
import { defineCommand, type FlagName, stringFlag } from "../flags.ts";
import { systemdUnit } from "../systemd.ts";

const FLAGS: FlagName[] = ["binary", "env-file"];

export const systemdUnitCommand = defineCommand({
  name: "overlay systemd-unit",
  usage: "overlay systemd-unit [--binary PATH] [--env-file PATH]",
  description:
    `Print a systemd unit (Type=notify, restart on failure, only CAP_NET_ADMIN and CAP_NET_RAW)
that runs "overlay run" with its flags from the environment file (OVERLAY_* variables).
The agent tells systemd READY=1 once the overlay is up, so units ordered
After=overlay.service start after it. Install:
  overlay systemd-unit > /etc/systemd/system/overlay.service && systemctl enable --now overlay`,
  flags: FLAGS,
  run({ values }) {
    console.log(
      systemdUnit({
        binary: stringFlag(values, "binary"),
        environmentFile: stringFlag(values, "env-file"),
      }).trimEnd(),
    );
    return Promise.resolve(0);
  },
});
