"""The traffic of `invoke load`: people browsing and searching the catalogue, editors changing it, buyers ordering.

Weights give a read-heavy mix (about 6 reads to 1 write to 2 orders); every request is named by its
route, so Locust's summary has one line per endpoint instead of one per movie id.
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

TITLES = ("Heat", "Alien", "Arrival", "Casablanca", "Vertigo", "Rashomon", "Stalker", "Amelie", "Ran", "Up")


class Visitor(FastHttpUser):
    wait_time = between(0.05, 0.5)

    def on_start(self) -> None:
        self.known_ids: list[int] = []

    @task(4)
    def browse(self) -> None:
        with self.client.get("/api/movies?limit=20", name="/api/movies?limit", catch_response=True) as answer:
            if answer.status_code == 200:
                self.known_ids = [movie["id"] for movie in answer.json()] or self.known_ids

    @task(3)
    def search(self) -> None:
        self.client.get(f"/api/movies?title={random.choice(TITLES)[:3].lower()}&limit=20", name="/api/movies?title")

    @task(3)
    def open_one(self) -> None:
        if self.known_ids:
            movie_id = random.choice(self.known_ids)
            with self.client.get(f"/api/movies/{movie_id}", name="/api/movies/[id]", catch_response=True) as answer:
                if answer.status_code == 404:  # another visitor deleted it: not a failure of the platform
                    answer.success()

    @task(1)
    def edit(self) -> None:
        title = f"{random.choice(TITLES)} {random.randint(1, 10**6)}"
        created = self.client.post("/api/movies", json={"title": title, "description": "added by invoke load"})
        if created.status_code != 201:
            return
        movie_id = created.json()["id"]
        self.client.put(f"/api/movies/{movie_id}", json={"description": "edited"}, name="/api/movies/[id]")
        if random.random() < 0.5:
            self.client.delete(f"/api/movies/{movie_id}", name="/api/movies/[id]")

    @task(2)
    def order(self) -> None:
        order = {
            "user_id": str(random.randint(1, 1000)),
            "number_of_items": str(random.randint(1, 5)),
            "total_amount": f"{random.randint(100, 20000) / 100:.2f}",
        }
        self.client.post("/api/billing", json=order)
