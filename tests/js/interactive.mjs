// A step-by-step scenario, to check the harness that /sync tests build on: it reports the
// server's versions, then for each JSON line the test sends ({"whoami": creds}) answers with
// the SDK's whoami, until the test sends null or closes stdin.
// Usage: node interactive.mjs <homeserver base URL>
import { anonymousClient, clientFor, emit, nextInput, runScenario } from "./lib/harness.mjs";

runScenario(async ({ baseUrl }) => {
  emit({ ready: true, versions: (await anonymousClient(baseUrl).getVersions()).versions });
  let answered = 0;
  for (let input = await nextInput(); input !== null; input = await nextInput()) {
    emit({ whoami: await clientFor(baseUrl, input.whoami).whoami() });
    answered += 1;
  }
  return { answered };
});
