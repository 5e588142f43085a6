package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
)

// TestHandedDownListenerKeepsThePort: the socket omsd dev keeps for an
// instance holds its port while no process serves it (nothing else can
// bind it), a connection made meanwhile waits in the backlog, and the
// next process that inherits the socket answers it.
func TestHandedDownListenerKeepsThePort(t *testing.T) {
	f, port, err := listenFile("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("port %d could be bound again while omsd dev holds it", port)
	}
	// No one accepts yet: the connection is queued, not refused.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("a connection while no instance serves the port: %v", err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// What a restarted instance does with fd 3 (net.FileListener
	// duplicates the descriptor).
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the queued request was not answered: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Errorf("status %d", resp.StatusCode)
	}
}
