// whoami with a given access token. Usage: node whoami.mjs <homeserver base URL> <access token>
import { runScenario, sdk } from "./lib/harness.mjs";

runScenario(async ({ baseUrl, args }) => {
  const client = sdk.createClient({ baseUrl, accessToken: args[0] });
  return await client.whoami();
});
