"""The web dashboard's static files (index.html and assets/), served by dashboard_routes."""
