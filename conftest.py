pytest_plugins = ["anyconv.testing.fixtures", "pytester"]
