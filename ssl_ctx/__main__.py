"""`python -m ssl_ctx ...` (and `torchrun -m ssl_ctx ...`) runs the CLI."""
from ssl_ctx.cli import main

raise SystemExit(main())
