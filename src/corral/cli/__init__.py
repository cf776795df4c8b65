"""`corral`: the everyday command line (docker's and nerdctl's conventions) over corrald."""
