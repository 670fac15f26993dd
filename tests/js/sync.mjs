// Two matrix-js-sdk clients with their /sync loops running (startClient), as Element runs:
// alice creates a room and invites bob; bob's client sees the invite and joins; alice's message,
// typing notification and bob's read receipt each arrive at the other client through /sync;
// bob's unread count comes from the server's unread_notifications.
// Usage: node sync.mjs <homeserver base URL>
import { clientFor, registerWithUia, runScenario, sdk, waitFor } from "./lib/harness.mjs";

async function started(client) {
  const ready = waitFor(client, sdk.ClientEvent.Sync, (state) => state === "PREPARED", "sync");
  await client.startClient({ initialSyncLimit: 10 });
  await ready;
}

runScenario(async ({ baseUrl }) => {
  const { response: a } = await registerWithUia(baseUrl, "jsalice", "correct horse battery");
  const { response: b } = await registerWithUia(baseUrl, "jsbob", "correct horse battery");
  const alice = clientFor(baseUrl, a);
  const bob = clientFor(baseUrl, b);
  const out = {};
  try {
    await started(alice);
    await started(bob);

    const invited = waitFor(
      bob,
      sdk.RoomEvent.MyMembership,
      (room, membership) => membership === "invite",
      "the invite",
    );
    const { room_id: roomId } = await alice.createRoom({
      name: "js sync room",
      invite: [b.user_id],
      preset: sdk.Preset.PrivateChat,
    });
    const [invitedRoom] = await invited;
    out.invitedRoomId = invitedRoom.roomId;
    out.invitedRoomName = invitedRoom.name;

    const joined = waitFor(
      bob,
      sdk.RoomEvent.MyMembership,
      (room, membership) => room.roomId === roomId && membership === "join",
      "the join",
    );
    await bob.joinRoom(roomId);
    await joined;

    const message = waitFor(
      bob,
      sdk.RoomEvent.Timeline,
      (event, room) =>
        room?.roomId === roomId && event.getType() === "m.room.message" && !event.isSending(),
      "alice's message",
    );
    const sent = await alice.sendTextMessage(roomId, "hello from alice");
    const [event] = await message;
    out.messageBody = event.getContent().body;
    out.messageIdMatches = event.getId() === sent.event_id;
    out.members = bob
      .getRoom(roomId)
      .getJoinedMembers()
      .map((m) => m.userId)
      .sort();

    // the unread count arrives with the message (sync's unread_notifications)
    const bobRoom = bob.getRoom(roomId);
    for (let i = 0; i < 100 && bobRoom.getUnreadNotificationCount("total") !== 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    out.unreadAfterMessage = bobRoom.getUnreadNotificationCount("total");

    const typing = waitFor(
      bob,
      sdk.RoomMemberEvent.Typing,
      (ev, member) => member.userId === a.user_id && member.typing,
      "alice typing",
    );
    await alice.sendTyping(roomId, true, 20000);
    await typing;
    out.sawTyping = true;

    const receipt = waitFor(
      alice,
      sdk.RoomEvent.Receipt,
      (ev, room) =>
        room.roomId === roomId &&
        Object.values(ev.getContent()).some((byType) =>
          Object.keys(byType?.["m.read"] ?? {}).includes(b.user_id),
        ),
      "bob's receipt",
    );
    await bob.sendReadReceipt(event);
    const [receiptEvent] = await receipt;
    out.receiptEventId =
      Object.entries(receiptEvent.getContent()).find(([, byType]) =>
        Object.keys(byType?.["m.read"] ?? {}).includes(b.user_id),
      )?.[0] ?? null;
    out.sentEventId = sent.event_id;
    // bob's receipt clears it: the server's next count says so
    const second = await alice.sendTextMessage(roomId, "are you there?");
    for (let i = 0; i < 100 && bobRoom.getUnreadNotificationCount("total") !== 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    out.unreadAfterReceiptAndOneMore = bobRoom.getUnreadNotificationCount("total");
    out.secondSent = Boolean(second.event_id);
  } finally {
    alice.stopClient();
    bob.stopClient();
  }
  return out;
});
