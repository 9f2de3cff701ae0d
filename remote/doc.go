// Package remote reads layer blobs from an OCI registry with bounded HTTP
// range requests, and is the one place that retries registry requests.
//
// Host configuration (mirrors, plain http, TLS, extra headers) comes from
// containerd's hosts.toml layout through core/remotes/docker/config, and
// authentication (anonymous and bearer tokens, basic auth) from containerd's
// docker authorizer; this package adds what containerd's fetcher lacks: one
// bounded "Range: bytes=first-last" request per read, checked against the
// answer's status, Content-Range and length (a short or long body is a
// retry, never data), with failover from one host (mirror) to the next.
//
// Every read (Blob.ReadAt, the size lookup) runs under one deadline
// (Options.ReadTimeout, or the caller's if earlier). Within it, transient
// failures (resets, timeouts, 5xx, 429, bad bodies) are retried, the
// first time at once, then with exponential backoff and full jitter,
// honouring Retry-After (retry.go); a request not answered within its
// host's recent time to an answer, or not done within its recent whole
// requests' time, is hedged: a second request races it and the first
// answer wins (hedge.go); and a host that keeps failing trips its circuit
// breaker, which holds requests back and lets one probe through at a
// bounded rate until the host answers again (breaker.go). A read that
// gives up returns an error naming registry, repository, layer and the
// last status, logged once per layer per outage.
//
// Registries on localhost or a loopback address are spoken to over plain
// http unless a hosts.toml says otherwise, like ctr's --plain-http.
//
// Blob redirects are followed by net/http on every request; caching them
// and docker config.json credentials are not done here yet (see
// Options.Credentials for the credentials hook).
package remote
