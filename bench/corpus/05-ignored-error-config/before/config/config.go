package config

// Config is the service configuration.
type Config struct {
	ListenAddr string `json:"listen_addr"`
	DataDir    string `json:"data_dir"`
	MaxUploads int    `json:"max_uploads"`
}

// Default is used when no configuration file is given.
func Default() Config {
	return Config{ListenAddr: ":8080", DataDir: "/var/lib/uploader", MaxUploads: 4}
}
