package chaos

import (
	"io"
	"net"
	"sync"
	"time"
)

// tcpProxy stands between the controller and the kube-apiserver, so a test
// can break the controller's connections (every watch with them) without
// touching anyone else's: Cut closes them all, Block also refuses new ones
// for a while.
type tcpProxy struct {
	l      net.Listener
	target string

	mu           sync.Mutex
	conns        map[net.Conn]struct{}
	blockedUntil time.Time
	closed       bool
	cuts         int
}

func startProxy(target string) (*tcpProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &tcpProxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	return p, nil
}

func (p *tcpProxy) Addr() string { return p.l.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.closed || time.Now().Before(p.blockedUntil)
		p.mu.Unlock()
		if refuse {
			reset(c)
			continue
		}
		go p.pipe(c)
	}
}

func (p *tcpProxy) pipe(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		reset(client)
		return
	}
	if !p.track(client, server) {
		reset(client)
		server.Close()
		return
	}
	var wg sync.WaitGroup
	for _, pair := range [][2]net.Conn{{client, server}, {server, client}} {
		wg.Go(func() {
			_, _ = io.Copy(pair[0], pair[1])
			// One way ended: end both, as a broken connection would.
			pair[0].Close()
			pair[1].Close()
		})
	}
	wg.Wait()
	p.untrack(client, server)
}

func (p *tcpProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *tcpProxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		delete(p.conns, c)
	}
}

// Cut resets every connection through the proxy.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cuts++
	for c := range p.conns {
		reset(c)
		delete(p.conns, c)
	}
}

// Block cuts every connection and refuses new ones for d.
func (p *tcpProxy) Block(d time.Duration) {
	p.mu.Lock()
	p.blockedUntil = time.Now().Add(d)
	p.mu.Unlock()
	p.Cut()
}

// Unblock lets connections through again at once.
func (p *tcpProxy) Unblock() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blockedUntil = time.Time{}
}

func (p *tcpProxy) blockedUntilTime() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blockedUntil
}

func (p *tcpProxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

func (p *tcpProxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.l.Close()
	p.Cut()
}

// reset closes a connection with a TCP reset, as a broken network path or
// a crashed peer would.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}
