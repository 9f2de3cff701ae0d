// Package remote reads layer blobs from an OCI registry with bounded HTTP
// range requests.
//
// Host configuration (mirrors, plain http, TLS, extra headers) comes from
// containerd's hosts.toml layout through core/remotes/docker/config, and
// authentication (anonymous and bearer tokens, basic auth) from containerd's
// docker authorizer; this package adds what containerd's fetcher lacks: one
// bounded "Range: bytes=first-last" request per read, checked against the
// answer's status and Content-Range, with failover from one host (mirror)
// to the next.
//
// Registries on localhost or a loopback address are spoken to over plain
// http unless a hosts.toml says otherwise, like ctr's --plain-http.
//
// Blob redirects are followed by net/http on every request; caching them,
// docker config.json credentials, retries with backoff and hedged requests
// are not done here yet (see Options.Credentials for the credentials hook).
package remote
