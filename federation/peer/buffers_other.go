//go:build !unix

package peer

import (
	"log/slog"
	"net"
)

const wantUDPBuffer = 7 << 20

// checkUDPBuffers asks for 7 MiB buffers; where the socket's size cannot
// be read back it says nothing (quic-go logs its own warning).
func checkUDPBuffers(conn *net.UDPConn, _ *slog.Logger, _ string) {
	_ = conn.SetReadBuffer(wantUDPBuffer)
	_ = conn.SetWriteBuffer(wantUDPBuffer)
}
