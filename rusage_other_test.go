//go:build !unix

package taskflow

import "time"

// processCPU is not measured off unix: the benchmarks report 0.
func processCPU() time.Duration { return 0 }
