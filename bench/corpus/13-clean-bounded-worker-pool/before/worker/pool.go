package worker

// Run calls fn for every item, one at a time, and returns the first error.
func Run(items []string, fn func(string) error) error {
	for _, item := range items {
		if err := fn(item); err != nil {
			return err
		}
	}
	return nil
}
