// A stock MQTT client library (MQTT.js, npm `mqtt`) over WebSocket, as a
// browser or a Node load tool would use it.
//
// usage: node mqttjs_ws.mjs chat|chat5 WS_URL USER TOKEN
//   chat:  MQTT 3.1.1 with keep-alive 0; subscribes to its inbox, sends
//          itself a message and prints "received TOPIC BODY" when it arrives.
//   chat5: the same over MQTT 5, also subscribing to another user's inbox
//          in the same SUBSCRIBE; prints "forbidden filter: CODE; received
//          TOPIC BODY" with that filter's SUBACK reason code.
// Needs BT_WEB_NODE_MODULES (where scripts/test installs mqtt). Exits 1 with
// the reason on stdout if anything fails within 20 s.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.BT_WEB_NODE_MODULES, "noop.js"));
const mqtt = require("mqtt");

const [mode, url, user, token] = process.argv.slice(2);
const v5 = mode === "chat5";
const body = v5 ? "hello from MQTT.js over MQTT 5" : "hello from MQTT.js with keepalive 0";

let finished = false;
function finish(line, code) {
  // Ending the client closes it; only the first outcome counts.
  if (finished) return;
  finished = true;
  console.log(line);
  client.end(true, () => process.exit(code));
  setTimeout(() => process.exit(code), 2000);
}
setTimeout(() => finish("no message within 20 s", 1), 20000);

const client = mqtt.connect(url, {
  clientId: `${user}.mqttjs`,
  username: user,
  password: token,
  protocolVersion: v5 ? 5 : 4,
  // Keep-alive 0 turns keep-alive off (MQTT 3.1.1 section 3.1.2.10).
  keepalive: 0,
  reconnectPeriod: 0,
  connectTimeout: 20000,
});
let forbidden = null;
client.on("error", (e) => finish(`error: ${e.message}`, 1));
client.on("close", () => finish("connection closed", 1));
client.on("connect", () => {
  const filters = v5 ? { [`u/${user}/inbox`]: { qos: 1 }, "u/bob/inbox": { qos: 1 } } : { [`u/${user}/inbox`]: { qos: 1 } };
  client.subscribe(filters, (err, _subs, suback) => {
    // MQTT.js reports a refused filter as an error carrying the SUBACK;
    // its reason codes are what a user of the library inspects.
    const codes = suback ? suback.granted : [];
    if (v5) forbidden = codes[1];
    else if (err) return finish(`subscribe failed: ${err.message}`, 1);
    if (codes[0] !== 1) return finish(`subscribe refused: ${codes} (${err && err.message})`, 1);
    const note = { id: `mqttjs-${mode}`, to: user, body };
    client.publish(`u/${user}/send`, JSON.stringify(note), { qos: 1 });
  });
});
client.on("message", (topic, payload) => {
  const event = JSON.parse(payload.toString());
  if (event.type !== "message") return;
  const line = `received ${topic} ${event.body}`;
  finish(v5 ? `forbidden filter: ${forbidden}; ${line}` : line, 0);
});
