package ui

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// DNS rebinding: a web page the operator visits can point its own host
// name at 127.0.0.1 and then read a loopback dashboard as same-origin
// (and post its forms with the page's own CSRF token). What gives it
// away is the Host header, which names the page's host. So a dashboard
// without credentials answers only requests that name it by a loopback
// name or by one of Config.AllowedHosts, as the MCP SDK's streamable HTTP
// handler does for a loopback listener.

// LoopbackHost reports whether host (a Host header: a name or an IP
// address, with or without a port) is a loopback name: "localhost" (any
// case) or an address in 127.0.0.0/8 or ::1.
func LoopbackHost(host string) bool {
	h := hostName(host)
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Unmap().IsLoopback()
}

// hostName is the lower-case name of a Host header without its port,
// brackets or a trailing dot.
func hostName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	return strings.ToLower(host)
}

// hostAllowed reports whether a request names this dashboard. With a
// token or basic-auth credentials every Host is served: a page of another
// site has no credentials to send.
func (s *Server) hostAllowed(r *http.Request) bool {
	if s.cfg.Token != "" || s.cfg.BasicUser != "" {
		return true
	}
	if LoopbackHost(r.Host) {
		return true
	}
	name := hostName(r.Host)
	for _, a := range s.cfg.AllowedHosts {
		if name != "" && hostName(a) == name {
			return true
		}
	}
	return false
}

// refuseHost answers a request for a host that is not this dashboard.
func refuseHost(w http.ResponseWriter, r *http.Request) {
	http.Error(w, fmt.Sprintf("Forbidden: the Host header %q does not name this dashboard "+
		"(loopback names only, unless --allowed-hosts names it)", r.Host), http.StatusForbidden)
}
