"""``workers demo``: the alarm pipeline on a local Redis and an embedded broker, end to end."""

TOPIC = "demo-alarm-events"
OUTPUT = "demo-alerts"
QUEUE = "demo"  # the pulls' chains and the alarm stages
CONSUME_QUEUE = "demo.consume"  # long-lived consumers
