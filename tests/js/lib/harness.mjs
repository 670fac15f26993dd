// Shared helpers for the matrix-js-sdk scenarios in tests/js/*.mjs.
//
// A scenario is an ES module that calls `runScenario(async (ctx) => { ... return result; })`.
// It is started as `node tests/js/<script>.mjs <homeserver base URL> [args...]` (or with
// HOMESERVER_URL set) by tests/integration/test_js_sdk.py. It prints exactly one JSON line on
// stdout: `{"ok": true, "result": ...}`, or `{"ok": false, "error": {...}}` with exit code 1.
// Everything the SDK logs goes to stderr, so stdout stays parseable.

import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

// The SDK and loglevel write to console.log/info/debug: keep stdout for the result line.
for (const method of ["log", "info", "debug", "warn", "trace"]) {
  console[method] = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");
}
logger.setLevel(process.env.JS_SDK_LOG_LEVEL ?? "warn", false);

export { sdk };

/** The homeserver base URL: first argument, else HOMESERVER_URL. */
export function baseUrlFromArgs() {
  const url = process.argv[2] ?? process.env.HOMESERVER_URL;
  if (!url) {
    throw new Error("usage: node <script>.mjs <homeserver base URL> (or set HOMESERVER_URL)");
  }
  return url.replace(/\/+$/, "");
}

/** A client with no credentials (for registration and login). */
export function anonymousClient(baseUrl) {
  return sdk.createClient({ baseUrl });
}

/** A client for an account (`creds` as a /register or /login answer returns them). */
export function clientFor(baseUrl, creds) {
  return sdk.createClient({
    baseUrl,
    userId: creds.user_id,
    deviceId: creds.device_id,
    accessToken: creds.access_token,
  });
}

/**
 * Register through the SDK's generic user-interactive auth (`InteractiveAuth`): the first
 * request goes without `auth`, the SDK reads `flows`/`params`/`session` from the 401 and
 * completes `m.login.dummy`, as Element's registration form does.
 *
 * Returns the /register answer and the `auth` dict of each request the SDK made (null for the
 * first one, which has none).
 */
export async function registerWithUia(baseUrl, username, password, deviceName = "js-sdk") {
  const client = anonymousClient(baseUrl);
  const requests = [];
  const ia = new sdk.InteractiveAuth({
    matrixClient: client,
    supportedStages: [sdk.AuthType.Dummy],
    doRequest: (auth) => {
      requests.push(auth ?? null);
      return client.registerRequest({
        username,
        password,
        initial_device_display_name: deviceName,
        ...(auth ? { auth } : {}),
      });
    },
    stateUpdated: () => {},
    // The SDK submits m.login.dummy by itself; this only runs for stages it leaves to the app.
    startAuthStage: async (stage) => {
      if (stage === sdk.AuthType.Dummy) {
        await ia.submitAuthDict({ type: sdk.AuthType.Dummy });
      }
    },
    requestEmailToken: async () => {
      throw new Error("no e-mail stage expected");
    },
  });
  const response = await ia.attemptAuth();
  return { response, requests };
}

/** A plain JSON view of an error thrown by the SDK (MatrixError keeps errcode and status). */
export function errorJson(err) {
  return {
    name: err?.name ?? "Error",
    message: String(err?.message ?? err),
    errcode: err?.errcode ?? null,
    httpStatus: err?.httpStatus ?? null,
    data: err?.data ?? null,
  };
}

/** Await `promise` and return the error it rejects with (as errorJson); fail if it resolves. */
export async function expectError(promise) {
  try {
    const value = await promise;
    throw new Error(`expected an error, got ${JSON.stringify(value)}`);
  } catch (err) {
    if (err instanceof Error && err.message.startsWith("expected an error")) throw err;
    return errorJson(err);
  }
}

/**
 * Run `scenario(ctx)` and print its result as one JSON line; exit 1 on failure.
 * `ctx` has `baseUrl` and `args` (the arguments after the URL).
 */
export function runScenario(scenario) {
  const ctx = { baseUrl: baseUrlFromArgs(), args: process.argv.slice(3) };
  scenario(ctx).then(
    (result) => {
      process.stdout.write(JSON.stringify({ ok: true, result: result ?? null }) + "\n");
      process.exit(0);
    },
    (err) => {
      process.stderr.write(`${err?.stack ?? err}\n`);
      process.stdout.write(JSON.stringify({ ok: false, error: errorJson(err) }) + "\n");
      process.exit(1);
    },
  );
}

/**
 * For scenarios driven step by step from the test (tests/integration/js_sdk.py `start_js`):
 * print one JSON line now (the test reads it with `next_message()`).
 */
export function emit(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

let stdinLines = null;

/** The next JSON line the test wrote to our stdin (`JsProcess.send()`), or null at its end. */
export async function nextInput() {
  if (stdinLines === null) {
    const { createInterface } = await import("node:readline");
    stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  }
  const { value, done } = await stdinLines.next();
  return done ? null : JSON.parse(value);
}

/** Resolve with the first `event` emitted by `emitter` for which `test(...args)` holds. */
export function waitFor(emitter, event, test, what, ms = 15000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.removeListener(event, handler);
      reject(new Error(`timed out waiting for ${what}`));
    }, ms);
    function handler(...args) {
      if (test(...args)) {
        clearTimeout(timer);
        emitter.removeListener(event, handler);
        resolve(args);
      }
    }
    emitter.on(event, handler);
  });
}
