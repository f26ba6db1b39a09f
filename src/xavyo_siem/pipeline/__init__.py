"""The streaming machinery: pipeline loop, rate limiter, retry policy, circuit breaker."""
