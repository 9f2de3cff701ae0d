package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Parse returns Default overlaid by the TOML document data, validated. Its
// error is an *Error naming the document "config.toml" and listing every
// problem found; the Config is then the zero value.
func Parse(data []byte) (Config, error) {
	return parse("config.toml", data)
}

// Load reads and parses the file at path; problems are reported against
// path. A missing file is an error wrapping fs.ErrNotExist: whether running
// on defaults is fine is the caller's decision.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("failed to read config: %w", err)
	}
	return parse(path, data)
}

func parse(name string, data []byte) (Config, error) {
	var c checker
	c.check(data)
	problems := c.problems
	cfg := Default()
	if !c.syntax {
		if err := decode(c.blanked(data), &cfg); err != nil {
			problems = append(problems, decodeProblems(err)...)
		} else if err := cfg.Validate(); err != nil {
			var verr *Error
			if !errors.As(err, &verr) {
				return Config{}, err
			}
			for _, p := range verr.Problems {
				p.Line = c.lines[p.Key]
				problems = append(problems, p)
			}
		}
	}
	if len(problems) > 0 {
		// Document order; problems without a line go last.
		slices.SortStableFunc(problems, func(a, b Problem) int {
			return cmp.Compare(lineOrder(a.Line), lineOrder(b.Line))
		})
		return Config{}, &Error{File: name, Problems: problems}
	}
	return cfg, nil
}

// decode overlays the document on cfg. The checker has already refused
// what the decoder would; strict mode stays on so that a key the checker
// let through by mistake is still an error rather than ignored.
func decode(data []byte, cfg *Config) error {
	return toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(cfg)
}

// decodeProblems turns go-toml's errors into problems.
func decodeProblems(err error) []Problem {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var problems []Problem
		for i := range strict.Errors {
			problems = append(problems, decodeProblem(&strict.Errors[i]))
		}
		return problems
	}
	var derr *toml.DecodeError
	if errors.As(err, &derr) {
		return []Problem{decodeProblem(derr)}
	}
	return []Problem{{Message: err.Error()}}
}

func decodeProblem(e *toml.DecodeError) Problem {
	line, _ := e.Position()
	return Problem{
		Line:    line,
		Key:     strings.Join(e.Key(), "."),
		Message: strings.TrimPrefix(e.Error(), "toml: "),
	}
}

func lineOrder(line int) int {
	if line <= 0 {
		return int(^uint(0) >> 1)
	}
	return line
}
