#!/usr/bin/env python3
"""A stock MQTT client library (Eclipse paho) over plain TCP, MQTT 3.1.1
(and MQTT 5 in mode chat5).

usage:
  paho_tcp.py chat HOST PORT USER TOKEN
      Connects as USER with keep-alive 0, subscribes to its inbox, sends
      itself a message and prints "received TOPIC BODY" when it arrives.
  paho_tcp.py chat5 HOST PORT USER TOKEN
      The same over MQTT 5, also subscribing to another user's inbox in the
      same SUBSCRIBE; prints "forbidden filter: CODE; received TOPIC BODY"
      with that filter's SUBACK reason code.
  paho_tcp.py hold HOST PORT CLIENT_ID TOPIC
      Persistent session, manual acks: subscribes to TOPIC at QoS 1, prints
      "subscribed", then on the first message prints "received dup=D PAYLOAD"
      and dies without acknowledging it or sending DISCONNECT.
  paho_tcp.py resume HOST PORT CLIENT_ID
      Resumes the persistent session of CLIENT_ID without subscribing and
      prints "received dup=D PAYLOAD" for the first message, then acks it.

Exits 1 with the reason on stdout if anything fails within 20 s.
"""
import json
import os
import sys
import threading

import paho.mqtt.client as mqtt

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
done = threading.Event()
subscribed = threading.Event()
outcome = {}


def fail(reason):
    outcome["error"] = reason
    done.set()


def on_connect(client, userdata, flags, reason_code, properties):
    if reason_code.is_failure:
        fail(f"connect refused: {reason_code}")
    elif mode == "chat":
        client.subscribe(f"u/{sys.argv[4]}/inbox", qos=1)
    elif mode == "chat5":
        client.subscribe([(f"u/{sys.argv[4]}/inbox", 1), ("u/bob/inbox", 1)])
    elif mode == "hold":
        client.subscribe(sys.argv[5], qos=1)


def on_subscribe(client, userdata, mid, reason_codes, properties):
    if mode == "chat5":
        # The first filter is ours and must be granted; the second is not.
        outcome["forbidden"] = reason_codes[1].value
        reason_codes = reason_codes[:1]
    if any(rc.is_failure for rc in reason_codes):
        fail(f"subscribe refused: {reason_codes}")
    else:
        subscribed.set()


def on_message(client, userdata, message):
    if mode in ("chat", "chat5"):
        event = json.loads(message.payload)
        if event.get("type") == "message":
            outcome["line"] = f"received {message.topic} {event['body']}"
            if mode == "chat5":
                outcome["line"] = f"forbidden filter: {outcome['forbidden']}; {outcome['line']}"
            done.set()
        return
    print(f"received dup={int(message.dup)} {message.payload.decode()}", flush=True)
    if mode == "hold":
        # Die as a phone losing its network would: no PUBACK, no DISCONNECT.
        os._exit(0)
    client.ack(message.mid, message.qos)
    outcome["line"] = "acked"
    done.set()


if mode in ("chat", "chat5"):
    user, token = sys.argv[4], sys.argv[5]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}.paho",
                         protocol=mqtt.MQTTv5 if mode == "chat5" else mqtt.MQTTv311)
    client.username_pw_set(user, token)
else:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=sys.argv[4],
                         protocol=mqtt.MQTTv311, clean_session=False, manual_ack=True)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
# Keep-alive 0 turns keep-alive off (MQTT 3.1.1 section 3.1.2.10).
client.connect(host, port, keepalive=0 if mode in ("chat", "chat5") else 30)
client.loop_start()
try:
    if mode in ("chat", "chat5", "hold"):
        if not subscribed.wait(20) and "error" not in outcome:
            fail("no SUBACK within 20 s")
    if mode == "hold" and "error" not in outcome:
        print("subscribed", flush=True)
    if mode in ("chat", "chat5") and "error" not in outcome:
        note = {"id": "paho-ka0", "to": sys.argv[4], "body": "hello with keepalive 0"}
        client.publish(f"u/{sys.argv[4]}/send", json.dumps(note), qos=1)
    if not done.wait(20) and "error" not in outcome:
        fail("no message within 20 s")
finally:
    client.disconnect()
    client.loop_stop()

if "error" in outcome:
    print(outcome["error"])
    sys.exit(1)
print(outcome["line"])
