"""One module per corral-runc verb: HELP, configure(parser), run(ctx, args)."""
