package gateway

// callStackBytes is about what a tools/call's pipeline takes of its
// goroutine's stack, from the outermost middleware down (policy, the
// upstream token's ECDSA signature, go-sdk's client, the audit write).
const callStackBytes = 16 << 10

// growStack makes the calling goroutine's stack hold callStackBytes more
// than it uses now, in one step.
//
// go-sdk runs each request on a goroutine of its own, which starts with a
// small stack; a tools/call then grew it several times on the way down,
// and each growth copies the stack and adjusts every frame on it, which
// the deeper it is the more it costs: 8% of a node's CPU per call (make
// bench-gateway's profile, runtime.newstack). Asking for the room while
// the stack is still shallow copies few frames once. The runtime offers no
// call for this; a frame this size is the way to ask.
//
//go:noinline
func growStack() {
	var pad [callStackBytes]byte
	touch(pad[:])
}

//go:noinline
func touch(b []byte) {
	if len(b) > 0 {
		b[len(b)-1] = 0
	}
}
