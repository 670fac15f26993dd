// Rooms with matrix-js-sdk, without /sync: createRoom, sendEvent/sendMessage/sendTextMessage,
// getStateEvent, and history through createMessagesRequest (the call the SDK's timeline
// pagination makes). Usage: node rooms.mjs <homeserver base URL> <username>
import { clientFor, expectError, registerWithUia, runScenario, sdk } from "./lib/harness.mjs";

runScenario(async ({ baseUrl, args }) => {
  const username = args[0] ?? "roomie";
  const { response: creds } = await registerWithUia(baseUrl, username, "correct horse battery");
  const client = clientFor(baseUrl, creds);
  const out = { userId: creds.user_id };

  const { room_id: roomId } = await client.createRoom({
    name: "js-sdk room",
    topic: "made by matrix-js-sdk",
    preset: sdk.Preset.PrivateChat,
    visibility: sdk.Visibility.Private,
  });
  out.roomId = roomId;

  const sent = [];
  sent.push(
    (await client.sendEvent(roomId, sdk.EventType.RoomMessage, { msgtype: "m.text", body: "one" }))
      .event_id,
  );
  sent.push((await client.sendMessage(roomId, { msgtype: "m.notice", body: "two" })).event_id);
  sent.push((await client.sendTextMessage(roomId, "three")).event_id);
  // An explicit transaction ID twice: the second PUT must give back the same event.
  const first = await client.sendEvent(roomId, "org.example.custom", { n: 4 }, "txn-js-1");
  const again = await client.sendEvent(roomId, "org.example.custom", { n: 4 }, "txn-js-1");
  sent.push(first.event_id);
  out.sent = sent;
  out.idempotentTxn = first.event_id === again.event_id;

  out.name = await client.getStateEvent(roomId, sdk.EventType.RoomName, "");
  out.topic = await client.getStateEvent(roomId, sdk.EventType.RoomTopic, "");
  out.create = await client.getStateEvent(roomId, sdk.EventType.RoomCreate, "");
  out.member = await client.getStateEvent(roomId, sdk.EventType.RoomMember, creds.user_id);
  out.missingState = await expectError(client.getStateEvent(roomId, "org.example.none", ""));

  // Newest first, two at a time, following `end` until the room's start.
  const pages = [];
  let from = null;
  for (let i = 0; i < 50; i++) {
    const page = await client.createMessagesRequest(roomId, from, 2, sdk.Direction.Backward);
    pages.push({
      start: page.start,
      end: page.end ?? null,
      chunk: page.chunk.map((e) => ({
        event_id: e.event_id,
        type: e.type,
        sender: e.sender,
        content: e.content,
        state_key: e.state_key,
      })),
    });
    if (!page.end || page.chunk.length === 0) break;
    from = page.end;
  }
  out.pages = pages;
  const forward = await client.createMessagesRequest(roomId, pages[0].start, 3, sdk.Direction.Forward);
  out.forwardFromNewest = forward.chunk.length;
  out.messagesUnknownRoom = await expectError(
    client.createMessagesRequest("!nope:test.local", null, 5, sdk.Direction.Backward),
  );
  return out;
});
