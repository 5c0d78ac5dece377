"""The seed article's User1, inserted once: a second run (or --force) finds the email taken and adds nothing."""

import sqlalchemy as sa
from sqlalchemy.orm import Session

USERS = [
    {"name": "User1", "email": "user1@example.com", "bio": "The start to my bio", "number_of_pets": 2},
]


def run(session: Session) -> None:
    session.execute(
        sa.text(
            "INSERT INTO users (name, email, bio, number_of_pets) "
            "VALUES (:name, :email, :bio, :number_of_pets) ON CONFLICT (email) DO NOTHING"
        ),
        USERS,
    )
