"""``python -m stress.server MODEL.onnx --port P ...``: run one model server (see ``stress._server``)."""

import sys

from ._server import main

if __name__ == "__main__":
    sys.exit(main())
