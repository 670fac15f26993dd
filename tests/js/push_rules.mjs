// Push rules with matrix-js-sdk: startClient (which fetches GET /pushrules/ before its first
// /sync), the rules the SDK keeps after its own fix-ups, edits through the SDK's methods, the
// m.push_rules account data event reaching the running client through /sync, and errors.
// Usage: node push_rules.mjs <homeserver base URL> <username>
import {
  clientFor,
  expectError,
  registerWithUia,
  runScenario,
  sdk,
  waitFor,
} from "./lib/harness.mjs";

const ids = (rules) => rules.map((r) => r.rule_id);

runScenario(async ({ baseUrl, args }) => {
  const username = args[0] ?? "pushrules";
  const { response: creds } = await registerWithUia(baseUrl, username, "correct horse battery");
  const client = clientFor(baseUrl, creds);
  const out = {};
  try {
    const prepared = waitFor(client, sdk.ClientEvent.Sync, (s) => s === "PREPARED", "sync");
    await client.startClient({ initialSyncLimit: 1 });
    await prepared;
    out.initialSyncPushRules = client.getAccountData("m.push_rules")?.getContent() ?? null;
    out.raw = await client.http.authedRequest(sdk.Method.Get, "/pushrules/");
    out.sdkOverride = ids(client.pushRules.global.override);
    out.sdkUnderride = ids(client.pushRules.global.underride);

    const kinds = sdk.PushRuleKind;
    const synced = waitFor(
      client,
      sdk.ClientEvent.AccountData,
      (ev) =>
        ev.getType() === "m.push_rules" &&
        ev.getContent().global.content.some((r) => r.rule_id === "cake"),
      "m.push_rules in /sync",
    );
    await client.addPushRule("global", kinds.ContentSpecific, "cake", {
      pattern: "cake",
      actions: ["notify", { set_tweak: "sound", value: "cakealarm.wav" }],
    });
    const [event] = await synced;
    out.syncedContent = event.getContent().global.content;
    out.clientContent = client.pushRules.global.content;

    await client.addPushRule("global", kinds.ContentSpecific, "lie", {
      pattern: "cake*lie",
      actions: ["notify"],
    });
    await client.setPushRuleEnabled("global", kinds.Override, ".m.rule.master", true);
    await client.setPushRuleActions("global", kinds.Underride, ".m.rule.message", []);
    await client.addPushRule("global", kinds.RoomSpecific, "!quiet:test.local", { actions: [] });
    const after = await client.getPushRules();
    out.afterEdits = {
      content: ids(after.global.content),
      master: after.global.override.find((r) => r.rule_id === ".m.rule.master"),
      message: after.global.underride.find((r) => r.rule_id === ".m.rule.message"),
      room: after.global.room,
    };
    await client.deletePushRule("global", kinds.ContentSpecific, "cake");
    out.afterDelete = ids((await client.getPushRules()).global.content);

    out.errors = {
      reserved: await expectError(
        client.addPushRule("global", kinds.Override, ".m.rule.mine", { actions: [] }),
      ),
      unknownRule: await expectError(client.deletePushRule("global", kinds.Override, "nope")),
      unknownKind: await expectError(client.setPushRuleEnabled("global", "device", "x", true)),
      noPattern: await expectError(
        client.addPushRule("global", kinds.ContentSpecific, "p", { actions: [] }),
      ),
    };
  } finally {
    client.stopClient();
  }
  return out;
});
