from amqp_raw import RawClient
from pamqp import commands


def test_raw_handshake_and_channel(broker):
    with RawClient(broker.host, broker.port) as client:
        start, tune, opened = client.handshake()
        assert isinstance(opened[1], commands.Connection.OpenOk)
        assert tune.channel_max == 2047 and tune.frame_max == 131072 and tune.heartbeat == 60
        client.open_channel(1)
