// Accounts with matrix-js-sdk: registration through the SDK's interactive auth, password login
// (the current `identifier` form and the deprecated `user` form), whoami, profile, devices and
// logout. Usage: node account.mjs <homeserver base URL> <username>
import {
  anonymousClient,
  clientFor,
  expectError,
  registerWithUia,
  runScenario,
} from "./lib/harness.mjs";

runScenario(async ({ baseUrl, args }) => {
  const username = args[0] ?? "alice";
  const password = "correct horse battery staple";
  const out = {};

  const registered = await registerWithUia(baseUrl, username, password, "js-sdk register");
  out.register = registered;
  const creds = registered.response;
  const client = clientFor(baseUrl, creds);
  out.whoamiAfterRegister = await client.whoami();

  out.registerAgain = await expectError(
    registerWithUia(baseUrl, username, password, "js-sdk again"),
  );

  // The current form: identifier + initial_device_display_name.
  const login = await anonymousClient(baseUrl).loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: username },
    password,
    initial_device_display_name: "js-sdk login",
  });
  out.login = login;
  const loggedIn = clientFor(baseUrl, login);
  out.whoamiAfterLogin = await loggedIn.whoami();

  // The deprecated form the SDK still ships: loginWithPassword sends {"user": ..., "password"}.
  const legacyClient = anonymousClient(baseUrl);
  out.legacyLogin = await legacyClient.loginWithPassword(creds.user_id, password);
  out.legacyClientState = {
    userId: legacyClient.getUserId(),
    deviceId: legacyClient.getDeviceId(),
    hasToken: Boolean(legacyClient.getAccessToken()),
  };

  out.wrongPassword = await expectError(
    anonymousClient(baseUrl).loginRequest({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: username },
      password: "not the password",
    }),
  );

  await loggedIn.setDisplayName("Alice from js-sdk");
  out.profile = await loggedIn.getProfileInfo(creds.user_id);
  out.displayname = await anonymousClient(baseUrl).getProfileInfo(creds.user_id, "displayname");

  out.devices = await loggedIn.getDevices();
  await loggedIn.setDeviceDetails(login.device_id, { display_name: "renamed by js-sdk" });
  out.device = await loggedIn.getDevice(login.device_id);

  out.logout = await loggedIn.logout();
  out.whoamiAfterLogout = await expectError(loggedIn.whoami());
  out.devicesAfterLogout = await client.getDevices();
  return out;
});
