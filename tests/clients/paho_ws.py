#!/usr/bin/env python3
"""A stock MQTT client library (Eclipse paho) over WebSocket.

Connects to bluetick's WebSocket listener as USER with TOKEN, subscribes to
its own inbox, sends itself a message and waits for it to arrive in the
inbox. Prints one line, "received TOPIC BODY", and exits 0 on success;
exits 1 with the reason otherwise.

usage: paho_ws.py HOST PORT USER TOKEN
"""
import json
import sys
import threading

import paho.mqtt.client as mqtt

host, port, user, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
subscribed = threading.Event()
received = threading.Event()
outcome = {}


def on_connect(client, userdata, flags, reason_code, properties):
    if reason_code.is_failure:
        outcome["error"] = f"connect refused: {reason_code}"
        received.set()
        return
    client.subscribe(f"u/{user}/inbox", qos=1)


def on_subscribe(client, userdata, mid, reason_codes, properties):
    if any(rc.is_failure for rc in reason_codes):
        outcome["error"] = f"subscribe refused: {reason_codes}"
        received.set()
        return
    subscribed.set()


def on_message(client, userdata, message):
    event = json.loads(message.payload)
    if event.get("type") == "message":
        outcome["message"] = f"received {message.topic} {event['body']}"
        received.set()


client = mqtt.Client(
    mqtt.CallbackAPIVersion.VERSION2,
    client_id=f"{user}.paho",
    transport="websockets",
    protocol=mqtt.MQTTv311,
)
client.ws_set_options(path="/mqtt")
client.username_pw_set(user, token)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(host, port, keepalive=30)
client.loop_start()
try:
    if not subscribed.wait(10) and "error" not in outcome:
        outcome["error"] = "no SUBACK within 10 s"
    if "error" not in outcome:
        note = {"id": "paho-1", "to": user, "body": "hello over websocket"}
        client.publish(f"u/{user}/send", json.dumps(note), qos=1)
        if not received.wait(10):
            outcome["error"] = "message not received within 10 s"
finally:
    client.disconnect()
    client.loop_stop()

if "error" in outcome:
    print(outcome["error"])
    sys.exit(1)
print(outcome["message"])
