package ctl

import (
	"context"
	"flag"
	"strings"

	"github.com/lazyfs/lazyfs/config"
)

func imageCommand() *command {
	return &command{
		name:    "image",
		summary: "pull images lazily through containerd and convert them to eStargz",
		subs:    []*command{imagePullCommand(), imageConvertCommand(), imageOptimizeCommand()},
	}
}

// registryFlags are the flags of a command that talks to a registry.
type registryFlags struct {
	plainHTTP bool
	hostsDir  string
}

func (r *registryFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&r.plainHTTP, "plain-http", false, "talk to the registry over plain http (always so for localhost and 127.0.0.1)")
	fs.StringVar(&r.hostsDir, "hosts-dir", "", "hosts.toml `dir` in containerd's layout (default: the config's registry.config_path)")
}

// resolve fills in the hosts dir from the config when the flag is not set.
func (r registryFlags) resolve(g *globals) (resolverOptions, error) {
	opts := resolverOptions(r)
	if opts.hostsDir == "" {
		cfg, err := g.config()
		if err != nil {
			return opts, err
		}
		opts.hostsDir = cfg.Registry.ConfigPath
	}
	return opts, nil
}

func imagePullCommand() *command {
	return &command{
		name:    "pull",
		args:    "REF",
		summary: "pull an image through containerd with the lazyfs snapshotter",
		help: `Pulls REF (e.g. registry.example.com/app:v1; a short name such as busybox means
docker.io/library/busybox:latest) with containerd's Go client, adding the layer
labels the snapshotter needs to mount eStargz layers lazily, which containerd
1.6's ctr does not send. Prints each layer's outcome: "lazily mounted" or
"unpacked" (fetched and unpacked as usual, e.g. a layer that is not eStargz).`,
		setup: func(fs *flag.FlagSet) action {
			var reg registryFlags
			reg.register(fs)
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) != 1 {
					return usagef("expected one image reference, got %d arguments", len(args))
				}
				ropts, err := reg.resolve(&a.g)
				if err != nil {
					return err
				}
				return pullImage(ctx, a, args[0], ropts)
			}
		},
	}
}

func imageConvertCommand() *command {
	return &command{
		name:    "convert",
		args:    "SRC DST",
		summary: "convert an image in containerd's content store to eStargz",
		help: `Converts the image named SRC in containerd (in --namespace) to an image whose
layers are eStargz and stores it as DST (DST may equal SRC). The source must be
complete in the content store: pull it with containerd's default snapshotter
first. With --push, DST is then pushed to its registry.`,
		setup: func(fs *flag.FlagSet) action {
			var (
				chunk      config.ByteSize
				prioritize stringList
				reg        registryFlags
			)
			fs.TextVar(&chunk, "chunk-size", config.ByteSize(0), "largest chunk of a file (`size`, e.g. 1MiB), the unit of a lazy read; 0: estargz's default (4MiB)")
			fs.Var(&prioritize, "prioritize", "`path` of a file to put first in its layer for prefetch (repeatable)")
			level := fs.Int("level", 0, "gzip `level` of the new layers, from -2 (Huffman only) to 9 (best); 0 means 9")
			push := fs.Bool("push", false, "push DST to its registry after converting")
			reg.register(fs)
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) != 2 {
					return usagef("expected SRC and DST, got %d arguments", len(args))
				}
				req := convertRequest{
					src:        args[0],
					dst:        args[1],
					chunkSize:  int(chunk),
					prioritize: prioritize,
					level:      *level,
				}
				if *push {
					ropts, err := reg.resolve(&a.g)
					if err != nil {
						return err
					}
					req.push = &ropts
				} else if reg.plainHTTP || reg.hostsDir != "" {
					return usagef("--plain-http and --hosts-dir only apply with --push")
				}
				return convertImage(ctx, a, req)
			}
		},
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}
