"""What an operator sees and does over HTTP: RabbitMQ's management API (``api``, with the
JSON shapes of ``objects`` and the list options of ``listing``), the rates it shows
(``sampler``) and the dashboard's files (``static/``), served by ``server``."""
