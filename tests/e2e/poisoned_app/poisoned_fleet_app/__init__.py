"""Test only: a Flower App with a poisoned device, submitted as a user's own app (tests/e2e)."""
