"""bench/chaos.sh idle scenario: open N keep-alive connections to HOST:PORT, send one GET on each and read
its answer, print "ready OPEN ANSWERED", hold them for HOLD seconds (idle), then print "open STILL_OPEN"
(connections the server has not closed) and exit. Standard library only (asyncio streams)."""
import asyncio
import sys


async def one(host, port, path):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    ok = head.startswith(b"HTTP/1.1 200")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return reader, writer, ok


async def main():
    host, port, n, hold, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    conns, answered = [], 0
    for start in range(0, n, 200):  # in batches, so the listen backlog is not the thing measured
        results = await asyncio.gather(*(one(host, port, path) for _ in range(start, min(n, start + 200))), return_exceptions=True)
        for r in results:
            if isinstance(r, Exception):
                continue
            conns.append(r)
            answered += r[2]
    print(f"ready {len(conns)} {answered}", flush=True)
    await asyncio.sleep(hold)
    still = 0
    for reader, writer, _ in conns:
        # a closed connection has hit EOF (or reset); an idle open one has nothing to read
        try:
            data = await asyncio.wait_for(reader.read(1), timeout=0.001)
            if data:
                still += 1
        except asyncio.TimeoutError:
            still += 1
        except OSError:
            pass
    print(f"open {still}", flush=True)
    for _, writer, _ in conns:
        writer.close()


asyncio.run(main())
