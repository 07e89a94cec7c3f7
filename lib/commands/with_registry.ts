/** Opens the registry for a short-lived command and closes the client afterwards. */
import { etcdFailure, type EtcdOptions } from "../etcd.ts";
import { EtcdClient } from "../etcd_client.ts";
import { SubnetRegistry } from "../registry.ts";

export async function withRegistry<T>(
  options: EtcdOptions,
  action: (registry: SubnetRegistry) => Promise<T>,
): Promise<T> {
  const client = new EtcdClient(options);
  try {
    return await action(new SubnetRegistry(client, options.prefix));
  } catch (error) {
    throw etcdFailure(error, options);
  } finally {
    client.close();
  }
}
