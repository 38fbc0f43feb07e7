//go:build unix

package peer

import (
	"log/slog"
	"net"

	"golang.org/x/sys/unix"
)

// wantUDPBuffer is the socket buffer quic-go asks for (7 MiB) so that a
// burst of packets at high throughput is not dropped before quic-go
// reads it.
const wantUDPBuffer = 7 << 20

// checkUDPBuffers raises conn's receive and send buffers to 7 MiB where
// the kernel allows it and logs one warning per socket where it does
// not. quic-go tries the same when it wraps the socket (SO_RCVBUF, then
// SO_RCVBUFFORCE, which needs CAP_NET_ADMIN) and, when that fails,
// prints its own line through the standard logger once per process;
// the node's log gets this structured one with the sysctl to set. A
// smaller buffer is not an error: QUIC still works, but may drop
// packets, and so slow down, under load.
func checkUDPBuffers(conn *net.UDPConn, log *slog.Logger, role string) {
	_ = conn.SetReadBuffer(wantUDPBuffer)
	_ = conn.SetWriteBuffer(wantUDPBuffer)
	raw, err := conn.SyscallConn()
	if err != nil {
		return
	}
	var rcv, snd int
	_ = raw.Control(func(fd uintptr) {
		rcv, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		snd, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	})
	// Linux reports twice the size asked for (it counts its bookkeeping),
	// so a granted request reads at least wantUDPBuffer.
	if rcv < wantUDPBuffer || snd < wantUDPBuffer {
		log.Warn("peer transport: UDP socket buffers are below the 7 MiB QUIC wants; throughput between BUs may suffer under load. Raise the limits: sysctl -w net.core.rmem_max=7500000 net.core.wmem_max=7500000 (or give the node CAP_NET_ADMIN)",
			"socket", role, "receive_kib", rcv/1024, "send_kib", snd/1024)
	}
}
