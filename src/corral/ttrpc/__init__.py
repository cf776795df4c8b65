"""ttrpc (containerd's lightweight RPC over unix sockets) on asyncio.

codec: the 10-byte frame header; client.Client and server.Server speak unary calls and streams
(client-, server- and bidirectional streaming, with ttrpc's remote-open/remote-closed/no-data
flags); errors.TtrpcError carries a google.rpc.Status code.
"""
