"""One module per `corral` verb: `configure(parser)` adds its flags, `run(opts, env)` does it
and returns the exit code."""
