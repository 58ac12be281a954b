#!/usr/bin/env python3
"""CDK entry point: synthesizes every stack into ``cdk.out`` without credentials or Docker."""

import os
from pathlib import Path

from anycompany_infra.app import build, new_app

# The cdk CLI passes its output directory; a plain `python app.py` writes next to this file.
app = new_app(outdir=os.environ.get("CDK_OUTDIR", str(Path(__file__).parent / "cdk.out")))
build(app)
app.synth()
