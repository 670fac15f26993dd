// Filters with matrix-js-sdk: createFilter, getFilter (not cached: a real GET), the
// getOrCreateFilter reuse check, and the errors for unknown IDs, bad filters and other users.
// Usage: node filters.mjs <homeserver base URL> <username>
import { clientFor, expectError, registerWithUia, runScenario, sdk } from "./lib/harness.mjs";

runScenario(async ({ baseUrl, args }) => {
  const username = args[0] ?? "filterer";
  const { response: creds } = await registerWithUia(baseUrl, username, "correct horse battery");
  const { response: other } = await registerWithUia(baseUrl, `${username}-other`, "horse battery");
  const client = clientFor(baseUrl, creds);
  const userId = creds.user_id;

  // The SDK's own builder, as its sync loop uses it, plus fields the builder has no setter for.
  const built = new sdk.Filter(userId);
  built.setTimelineLimit(7);
  built.setLazyLoadMembers(true);
  built.setIncludeLeaveRooms(false);
  const definition = {
    ...built.getDefinition(),
    event_fields: ["type", "content", "sender", "content.m\\.relates_to"],
    event_format: "client",
    presence: { not_types: ["*"] },
  };
  definition.room.timeline.types = ["m.room.*"];
  definition.room.timeline.not_senders = ["@spam:example.org"];

  const created = await client.createFilter(definition);
  const fetched = await client.getFilter(userId, created.filterId, false);
  const again = await client.createFilter(definition);

  const named = {
    first: await client.getOrCreateFilter("js-harness", sdk.Filter.fromJson(userId, undefined, definition)),
  };
  named.second = await client.getOrCreateFilter(
    "js-harness",
    sdk.Filter.fromJson(userId, undefined, definition),
  );

  return {
    userId,
    definition,
    created: { filterId: created.filterId, userId: created.userId },
    fetched: {
      definition: fetched.getDefinition(),
      timelineLimit: fetched.getDefinition().room.timeline.limit,
    },
    sameIdForSameFilter: again.filterId === created.filterId,
    named,
    unknown: await expectError(client.getFilter(userId, "987654", false)),
    bad: await expectError(client.createFilter({ room: { timeline: { limit: -1 } } })),
    otherUser: await expectError(client.getFilter(other.user_id, created.filterId, false)),
  };
});
