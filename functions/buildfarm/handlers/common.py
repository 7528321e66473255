"""What every handler shares: Powertools' logger, tracer and metrics, configured from the
environment the stack gives each function (POWERTOOLS_SERVICE_NAME, the metrics namespace)."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import utils as logging_utils

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "buildfarm")


def powertools() -> tuple[Logger, Tracer, Metrics]:
    logger = Logger(service=SERVICE)
    tracer = Tracer(service=SERVICE)
    metrics = Metrics(service=SERVICE, namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BuildFarm"))
    # Domain modules log with stdlib logging (buildfarm.*): give them this logger's JSON format.
    logging_utils.copy_config_to_registered_loggers(source_logger=logger, include={"buildfarm"})
    return logger, tracer, metrics
