"""ttrpc (containerd's lightweight RPC over unix sockets) on asyncio.

codec: the 10-byte frame header; client.Client and server.Server speak unary calls
(and pass data frames through for streams); errors.TtrpcError carries a google.rpc.Status code.
"""
