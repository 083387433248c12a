"""The services' servers, one package each; the contracts are `visionloop.<service>.v1`."""
