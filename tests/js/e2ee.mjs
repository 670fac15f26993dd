// End-to-end encryption with two real matrix-js-sdk clients (Rust crypto: Olm/Megolm from
// @matrix-org/matrix-sdk-crypto-wasm) in one Node process, everything going through the server:
//
// 1. alice and bob register (InteractiveAuth), initialise Rust crypto with its in-memory store
//    (`useIndexedDB: false`: Node has no IndexedDB) and start syncing;
// 2. alice creates a room with `m.room.encryption` (m.megolm.v1.aes-sha2) and invites bob, bob
//    joins; alice sends a text message that bob's client decrypts, bob replies, alice decrypts;
// 3. SAS verification of the two *devices* over to-device messages (requestDeviceVerification):
//    each side compares the emoji and decimals it was shown with the other's, then confirms;
// 4. both bootstrap cross-signing (a first upload needs no UIA; the callback would answer it
//    with the password) and verify
//    each other as *users* with SAS in the room (requestVerificationDM);
// 5. one more message each way, decrypted by the other side;
// 6. alice resets her cross-signing keys (UIA with the password): bob sees her identity change.
//
// Prints the plaintexts, what each side decrypted, the SAS each side saw, the verification
// states, and every non-2xx HTTP answer the clients got (method, path, status, errcode), so the
// test can tell a missing endpoint from an expected 401/404.
// Usage: node e2ee.mjs <homeserver base URL> [run tag]
//
// matrix-js-sdk 37.5.0 quirks met here:
// - `initRustCrypto({ useIndexedDB: false })` keeps the crypto store in memory: no IndexedDB
//   (nor fake-indexeddb) is needed in Node 20.
// - The crypto-api enums (CryptoEvent, VerificationPhase, VerifierEvent) are not re-exported
//   by the package root; import them from `matrix-js-sdk/lib/crypto-api/index.js` (importing
//   `matrix-js-sdk/lib/index.js` too would be a second entrypoint, which the SDK refuses).
// - The Rust `VerificationRequest.methods` getter throws "not implemented".
// - In-room verification (`requestVerificationDM`) sends its events unencrypted, even in an
//   encrypted room: an `m.room.message` with msgtype `m.key.verification.request`, then
//   `m.key.verification.*` events.
// - `isEncryptionEnabledInRoom` turns true only once the client has the room's state from
//   /sync: a fresh join needs a wait.
import {
  CryptoEvent,
  VerificationPhase,
  VerifierEvent,
} from "matrix-js-sdk/lib/crypto-api/index.js";

import { clientFor, registerWithUia, runScenario, sdk } from "./lib/harness.mjs";

const PASSWORD = "correct horse battery";
const STEP_TIMEOUT_MS = Number(process.env.E2EE_STEP_TIMEOUT_MS ?? 20000);
// Below run_js's timeout in the test, so a hang still reports how far the scenario got.
const SCENARIO_TIMEOUT_MS = Number(process.env.E2EE_SCENARIO_TIMEOUT_MS ?? 75000);

// Every non-2xx answer either client got, for the report (the SDK only logs them), and the
// event types the clients sent as to-device messages (room keys must travel Olm-encrypted).
const httpErrors = [];
const toDeviceTypesSent = {};
const realFetch = globalThis.fetch;
globalThis.fetch = async (resource, options) => {
  const url = new URL(resource instanceof Request ? resource.url : String(resource));
  const toDevice = url.pathname.match(/\/sendToDevice\/([^/]+)\//);
  if (toDevice) {
    const type = decodeURIComponent(toDevice[1]);
    toDeviceTypesSent[type] = (toDeviceTypesSent[type] ?? 0) + 1;
  }
  const response = await realFetch(resource, options);
  if (!response.ok) {
    let errcode = null;
    try {
      errcode = (await response.clone().json())?.errcode ?? null;
    } catch {
      // not JSON
    }
    httpErrors.push({
      method: options?.method ?? "GET",
      path: url.pathname,
      status: response.status,
      errcode,
    });
  }
  return response;
};

// The steps done so far (ms since start), reported with a failure to show where it stopped.
const startedAt = Date.now();
const progress = [];
const done = (label) => progress.push(`${Date.now() - startedAt} ms: ${label}`);

/** Await `promise`, failing after the step timeout: no step of the flow may hang silently. */
async function step(label, promise, timeoutMs = STEP_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms: ${label}`)),
      timeoutMs,
    );
  });
  try {
    const value = await Promise.race([promise, timeout]);
    done(label);
    return value;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Resolve with `check()`'s value once it is truthy (polled), or fail after the step timeout
 * (`label`, a string or a function giving one, says what was awaited and how far it got).
 */
async function until(label, check, timeoutMs = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) {
      done(typeof label === "function" ? label() : label);
      return value;
    }
    if (Date.now() > deadline) {
      const what = typeof label === "function" ? label() : label;
      throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Register, create a client, initialise Rust crypto (in memory) and start syncing. */
async function startUser(baseUrl, username) {
  const { response: creds } = await step(
    `register ${username}`,
    registerWithUia(baseUrl, username, PASSWORD, `${username}'s js-sdk`),
  );
  const client = clientFor(baseUrl, creds);
  await step(`${username}: initRustCrypto`, client.initRustCrypto({ useIndexedDB: false }));
  const verificationRequests = [];
  client.on(CryptoEvent.VerificationRequestReceived, (request) =>
    verificationRequests.push(request),
  );
  const prepared = new Promise((resolve, reject) => {
    client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
      if (state === sdk.SyncState.Prepared || state === sdk.SyncState.Syncing) resolve();
      if (state === sdk.SyncState.Error) reject(data?.error ?? new Error("sync error"));
    });
  });
  await client.startClient({ initialSyncLimit: 20 });
  await step(`${username}: first /sync`, prepared);
  return {
    client,
    crypto: client.getCrypto(),
    creds,
    userId: creds.user_id,
    deviceId: creds.device_id,
    verificationRequests,
  };
}

/** Answer the UIA of POST /keys/device_signing/upload with the account's password. */
function passwordAuth(user, record) {
  return async (makeRequest) => {
    try {
      const result = await makeRequest(null);
      record.push({ uia: false });
      return result;
    } catch (err) {
      if (err?.httpStatus !== 401 || !err?.data?.flows) throw err;
      record.push({ uia: true, flows: err.data.flows });
      return makeRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: user.userId },
        password: PASSWORD,
        session: err.data.session,
      });
    }
  };
}

/** Wait for `eventId` in `user`'s copy of the room and decrypt it; return what the SDK shows. */
async function receive(user, roomId, eventId) {
  const event = await until(`${user.userId} receives ${eventId}`, () =>
    user.client.getRoom(roomId)?.findEventById(eventId),
  );
  await step(`${user.userId} decrypts ${eventId}`, user.client.decryptEventIfNeeded(event));
  await until(
    () => `${user.userId} decrypts ${eventId} (failure: ${event.decryptionFailureReason})`,
    () =>
      !event.isBeingDecrypted() &&
      !event.isDecryptionFailure() &&
      event.getType() !== "m.room.encrypted",
  );
  const info = await user.crypto.getEncryptionInfoForEvent(event);
  return {
    eventId,
    sender: event.getSender(),
    encrypted: event.isEncrypted(),
    wireType: event.getWireType(),
    wireAlgorithm: event.getWireContent().algorithm ?? null,
    wireHasCiphertext: typeof event.getWireContent().ciphertext === "string",
    type: event.getType(),
    content: event.getContent(),
    senderCurve25519Key: event.getSenderKey(),
    shieldColour: info?.shieldColour ?? null,
    shieldReason: info?.shieldReason ?? null,
  };
}

/** Send `body` from `from` and have `to` decrypt it. */
async function exchange(from, to, roomId, body) {
  const { event_id: eventId } = await step(
    `${from.userId} sends`,
    from.client.sendTextMessage(roomId, body),
  );
  return { sent: body, received: await receive(to, roomId, eventId) };
}

/**
 * Run a SAS verification: `start()` sends the request from `initiator`; `responder` accepts
 * it; the initiator starts m.sas.v1; both verifiers show their SAS, the script compares the
 * two sides' emoji and decimals and confirms both only if they match.
 */
async function sasVerification(initiator, responder, start) {
  const before = responder.verificationRequests.length;
  const request = await step(`${initiator.userId} requests verification`, start());
  const incoming = await until(`${responder.userId} receives the verification request`, () =>
    responder.verificationRequests
      .slice(before)
      .find((r) => r.transactionId === request.transactionId),
  );
  await step(`${responder.userId} accepts`, incoming.accept());
  await until(
    `${initiator.userId}'s request is ready`,
    () => request.phase === VerificationPhase.Ready,
  );
  const initiatorVerifier = await step(
    `${initiator.userId} starts m.sas.v1`,
    request.startVerification("m.sas.v1"),
  );
  const responderVerifier = await until(`${responder.userId}'s verifier`, () =>
    incoming.phase === VerificationPhase.Started ? incoming.verifier : null,
  );

  const shown = (verifier) =>
    new Promise((resolve) => {
      const existing = verifier.getShowSasCallbacks();
      if (existing) resolve(existing);
      else verifier.once(VerifierEvent.ShowSas, resolve);
    });
  const initiatorSas = shown(initiatorVerifier);
  const responderSas = shown(responderVerifier);
  const verified = Promise.all([initiatorVerifier.verify(), responderVerifier.verify()]);
  verified.catch(() => {}); // awaited below; this keeps an early failure from being "unhandled"
  const [a, b] = await step(
    "both sides show the SAS",
    Promise.race([
      Promise.all([initiatorSas, responderSas]),
      verified.then(() => {
        throw new Error("verification ended before both sides showed a SAS");
      }),
    ]),
  );
  const match =
    JSON.stringify(a.sas.emoji) === JSON.stringify(b.sas.emoji) &&
    JSON.stringify(a.sas.decimal) === JSON.stringify(b.sas.decimal);
  if (!match) {
    a.mismatch();
    b.mismatch();
    throw new Error(`SAS differ: ${JSON.stringify(a.sas)} vs ${JSON.stringify(b.sas)}`);
  }
  await step("both confirm", Promise.all([a.confirm(), b.confirm()]));
  await step("both verifiers finish", verified);
  await until(
    "both requests are done",
    () => request.phase === VerificationPhase.Done && incoming.phase === VerificationPhase.Done,
  );
  return {
    transactionId: request.transactionId,
    roomId: request.roomId ?? null,
    initiatorSas: sasJson(a.sas),
    responderSas: sasJson(b.sas),
    match,
    phases: { initiator: request.phase, responder: incoming.phase },
  };
}

/** The SAS as words and numbers (the emoji's names, as the spec's table lists them). */
function sasJson(sas) {
  return { emoji: sas.emoji?.map(([, name]) => name) ?? null, decimal: sas.decimal ?? null };
}

async function deviceStatus(viewer, other) {
  const status = await viewer.crypto.getDeviceVerificationStatus(other.userId, other.deviceId);
  return status === null
    ? null
    : {
        isVerified: status.isVerified(),
        localVerified: status.localVerified,
        crossSigningVerified: status.crossSigningVerified,
        signedByOwner: status.signedByOwner,
      };
}

async function userStatus(viewer, other) {
  const status = await viewer.crypto.getUserVerificationStatus(other.userId);
  return {
    isVerified: status.isVerified(),
    isCrossSigningVerified: status.isCrossSigningVerified(),
    wasCrossSigningVerified: status.wasCrossSigningVerified(),
    needsUserApproval: status.needsUserApproval,
  };
}

setTimeout(() => {
  const message = `scenario still running after ${SCENARIO_TIMEOUT_MS} ms`;
  const data = { progress, httpErrors, toDeviceTypesSent };
  process.stderr.write(`${message}\n${JSON.stringify(data)}\n`);
  const line = JSON.stringify({ ok: false, error: { name: "Error", message, data } });
  process.stdout.write(`${line}\n`);
  process.exit(1);
}, SCENARIO_TIMEOUT_MS).unref();

runScenario(async ({ baseUrl, args }) => {
  const tag = args[0] ?? Math.random().toString(36).slice(2, 10);
  const alice = await startUser(baseUrl, `alice-${tag}`);
  const bob = await startUser(baseUrl, `bob-${tag}`);
  const out = {
    // The access tokens let the test read what the server serves (/messages) as each user.
    alice: {
      userId: alice.userId,
      deviceId: alice.deviceId,
      accessToken: alice.creds.access_token,
    },
    bob: { userId: bob.userId, deviceId: bob.deviceId, accessToken: bob.creds.access_token },
  };

  try {
    // An encrypted room; bob joins through his client once the invite arrives by /sync.
    const { room_id: roomId } = await step(
      "alice creates the room",
      alice.client.createRoom({
        name: "encrypted js-sdk room",
        preset: sdk.Preset.PrivateChat,
        invite: [bob.userId],
        initial_state: [
          {
            type: "m.room.encryption",
            state_key: "",
            content: { algorithm: "m.megolm.v1.aes-sha2" },
          },
        ],
      }),
    );
    out.roomId = roomId;
    await until(
      "bob sees the invite",
      () => bob.client.getRoom(roomId)?.getMyMembership() === "invite",
    );
    await step("bob joins", bob.client.joinRoom(roomId));
    await until(
      "alice sees bob join",
      () => alice.client.getRoom(roomId)?.getMember(bob.userId)?.membership === "join",
    );
    // Each client learns that the room is encrypted from its state, by /sync.
    for (const user of [alice, bob]) {
      await until(`${user.userId}'s client sees m.room.encryption`, () =>
        user.crypto.isEncryptionEnabledInRoom(roomId),
      );
    }
    out.encryptionEnabled = {
      alice: await alice.crypto.isEncryptionEnabledInRoom(roomId),
      bob: await bob.crypto.isEncryptionEnabledInRoom(roomId),
    };

    const plain = (what) => `${what} ${tag} ${Math.random().toString(36).slice(2)}`;
    out.messages = [
      await exchange(alice, bob, roomId, plain("secret from alice")),
      await exchange(bob, alice, roomId, plain("secret reply from bob")),
    ];

    // Interactive SAS between the two devices, over to-device messages.
    out.deviceVerification = await sasVerification(alice, bob, () =>
      alice.crypto.requestDeviceVerification(bob.userId, bob.deviceId),
    );
    out.deviceStatusAfterDeviceVerification = {
      aliceSeesBob: await deviceStatus(alice, bob),
      bobSeesAlice: await deviceStatus(bob, alice),
    };

    // Cross-signing, then SAS between the users in the room.
    const uia = { alice: [], bob: [] };
    for (const [user, record] of [
      [alice, uia.alice],
      [bob, uia.bob],
    ]) {
      await step(
        `${user.userId} bootstraps cross-signing`,
        user.crypto.bootstrapCrossSigning({
          authUploadDeviceSigningKeys: passwordAuth(user, record),
        }),
      );
    }
    out.crossSigning = {
      uia,
      aliceReady: await alice.crypto.isCrossSigningReady(),
      bobReady: await bob.crypto.isCrossSigningReady(),
    };
    // Each learns of the other's new keys through device_lists.changed in /sync.
    for (const [viewer, other] of [
      [alice, bob],
      [bob, alice],
    ]) {
      await until(`${viewer.userId} sees ${other.userId}'s cross-signing keys`, () =>
        viewer.crypto.userHasCrossSigningKeys(other.userId),
      );
    }
    out.userStatusBefore = {
      aliceSeesBob: await userStatus(alice, bob),
      bobSeesAlice: await userStatus(bob, alice),
    };

    out.userVerification = await sasVerification(alice, bob, () =>
      alice.crypto.requestVerificationDM(bob.userId, roomId),
    );
    // Both users' signatures of the other's master key reach the other side through the server.
    for (const [viewer, other] of [
      [alice, bob],
      [bob, alice],
    ]) {
      await until(
        `${viewer.userId} trusts ${other.userId} by cross-signing`,
        async () => (await userStatus(viewer, other)).isCrossSigningVerified,
      );
    }
    out.userStatusAfter = {
      aliceSeesBob: await userStatus(alice, bob),
      bobSeesAlice: await userStatus(bob, alice),
    };
    out.deviceStatusAfter = {
      aliceSeesBob: await deviceStatus(alice, bob),
      bobSeesAlice: await deviceStatus(bob, alice),
    };

    out.messagesAfterVerification = [
      await exchange(alice, bob, roomId, plain("verified secret from alice")),
      await exchange(bob, alice, roomId, plain("verified secret from bob")),
    ];

    // alice resets her cross-signing keys: replacing a master key needs UIA (the password),
    // and bob learns through the server that the identity he verified is gone.
    const resetUia = [];
    await step(
      "alice resets cross-signing",
      alice.crypto.bootstrapCrossSigning({
        setupNewCrossSigning: true,
        authUploadDeviceSigningKeys: passwordAuth(alice, resetUia),
      }),
    );
    await until(
      "bob sees alice's new identity",
      async () => !(await userStatus(bob, alice)).isCrossSigningVerified,
    );
    out.crossSigningReset = { uia: resetUia, bobSeesAlice: await userStatus(bob, alice) };
  } catch (err) {
    // runScenario reports err.data: say how far it got and what the server refused.
    err.data = { ...(err.data ?? {}), progress, partial: out, httpErrors, toDeviceTypesSent };
    throw err;
  } finally {
    out.httpErrors = httpErrors;
    out.toDeviceTypesSent = toDeviceTypesSent;
    alice.client.stopClient();
    bob.client.stopClient();
  }
  return out;
});
