//! Reservations: stock held for a caller-chosen id (an order), committed when it ships,
//! released when it does not, and given back on its own when nobody does either in time.
//!
//! Expiry is a guarded state change like release (`WHERE state = 'ACTIVE'`), so any number
//! of replicas may sweep at once, and a commit racing an expiry lets exactly one win.

use super::{Applied, Reservation, ReservationState, Store, available_in};
use crate::{Error, Result};
use meshmart::status::Failure;

/// How many expired reservations one sweep gives back at most; the next sweep takes the rest.
const SWEEP_BATCH: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    Release,
    Commit,
    Expire,
}

impl Close {
    fn state(self) -> ReservationState {
        match self {
            Self::Release | Self::Expire => ReservationState::Released,
            Self::Commit => ReservationState::Committed,
        }
    }

    fn reason(self) -> Option<&'static str> {
        (self == Self::Expire).then_some("EXPIRED")
    }

    fn verb(self) -> &'static str {
        match self {
            Self::Release | Self::Expire => "released",
            Self::Commit => "committed",
        }
    }
}

type Row = (String, i64, i64, Option<i64>, Option<String>);

impl Store {
    /// Holds stock for every item, all or nothing, once per `reservation_id`. `items` must
    /// name each product once. The stock is given back if the reservation is neither
    /// committed nor released within the reservation time-to-live.
    pub async fn reserve(
        &self,
        reservation_id: &str,
        items: &[(String, i64)],
    ) -> Result<(Reservation, Applied)> {
        let mut items = items.to_vec();
        items.sort();
        let now = self.now();
        let expire = now.saturating_add(self.reservation_ttl_ms);
        let mut tx = self.db.write().begin().await?;
        let created = sqlx::query(
            "INSERT INTO reservations (reservation_id, state, create_time_ms, update_time_ms, expire_time_ms) \
             VALUES ($1, 'ACTIVE', $2, $2, $3) ON CONFLICT (reservation_id) DO NOTHING",
        )
        .bind(reservation_id)
        .bind(now)
        .bind(expire)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if created == 0 {
            tx.rollback().await?;
            let earlier = self.reservation(reservation_id).await?;
            if earlier.items != items {
                return Err(Failure::key_reused("reservation_id", reservation_id).into());
            }
            return Ok((earlier, Applied::Earlier));
        }
        for (product_id, quantity) in &items {
            let held = sqlx::query(
                "UPDATE stock SET available = available - $2, reserved = reserved + $2, update_time_ms = $3 \
                 WHERE product_id = $1 AND available >= $2",
            )
            .bind(product_id)
            .bind(quantity)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if held == 0 {
                let available = available_in(&mut tx, product_id).await?;
                tx.rollback().await?;
                return Err(Error::InsufficientStock {
                    product_id: product_id.clone(),
                    requested: *quantity,
                    available,
                });
            }
            sqlx::query("INSERT INTO reservation_items (reservation_id, product_id, quantity) VALUES ($1, $2, $3)")
                .bind(reservation_id)
                .bind(product_id)
                .bind(quantity)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((
            Reservation {
                reservation_id: reservation_id.to_owned(),
                items,
                state: ReservationState::Active,
                create_time_ms: now,
                update_time_ms: now,
                expire_time_ms: Some(expire),
                expired: false,
            },
            Applied::Now,
        ))
    }

    /// Returns a reservation.
    pub async fn reservation(&self, reservation_id: &str) -> Result<Reservation> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT state, create_time_ms, update_time_ms, expire_time_ms, close_reason \
             FROM reservations WHERE reservation_id = $1",
        )
        .bind(reservation_id)
        .fetch_optional(self.db.read())
        .await?;
        let Some((state, create_time_ms, update_time_ms, expire_time_ms, reason)) = row else {
            return Err(Error::ReservationNotFound(reservation_id.to_owned()));
        };
        let mut items: Vec<(String, i64)> = sqlx::query_as(
            "SELECT product_id, quantity FROM reservation_items WHERE reservation_id = $1",
        )
        .bind(reservation_id)
        .fetch_all(self.db.read())
        .await?;
        // Sorted here rather than in SQL: collation order differs between databases.
        items.sort();
        Ok(Reservation {
            reservation_id: reservation_id.to_owned(),
            items,
            state: ReservationState::parse(&state),
            create_time_ms,
            update_time_ms,
            expire_time_ms,
            expired: reason.as_deref() == Close::Expire.reason(),
        })
    }

    /// Returns held stock to available. Releasing a released reservation changes nothing.
    pub async fn release(&self, reservation_id: &str) -> Result<(Reservation, Applied)> {
        self.close(reservation_id, Close::Release).await
    }

    /// Takes held stock out for good. Committing a committed reservation changes nothing;
    /// an expired one cannot be committed (its stock went back).
    pub async fn commit(&self, reservation_id: &str) -> Result<(Reservation, Applied)> {
        self.close(reservation_id, Close::Commit).await
    }

    /// How many reservations hold stock now: neither committed, released nor expired
    /// (one past its time counts as expired even before the sweeper closes it). Read from
    /// the database, so every replica reports what all of them did.
    pub async fn count_active_reservations(&self) -> Result<i64> {
        let (active,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM reservations \
             WHERE state = 'ACTIVE' AND (expire_time_ms IS NULL OR expire_time_ms > $1)",
        )
        .bind(self.now())
        .fetch_one(self.db.read())
        .await?;
        Ok(active)
    }

    /// Gives back the stock of reservations whose time ran out; returns how many.
    pub async fn expire_reservations(&self) -> Result<usize> {
        let due: Vec<(String,)> = sqlx::query_as(
            "SELECT reservation_id FROM reservations \
             WHERE state = 'ACTIVE' AND expire_time_ms <= $1 ORDER BY expire_time_ms LIMIT $2",
        )
        .bind(self.now())
        .bind(SWEEP_BATCH)
        .fetch_all(self.db.read())
        .await?;
        let mut expired = 0;
        for (reservation_id,) in due {
            // Committed or released since it was read: not this sweep's to close.
            match self.close(&reservation_id, Close::Expire).await {
                Ok((_, Applied::Now)) => expired += 1,
                Ok((_, Applied::Earlier)) | Err(Error::ReservationClosed { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(expired)
    }

    async fn close(&self, reservation_id: &str, close: Close) -> Result<(Reservation, Applied)> {
        let target = close.state();
        let now = self.now();
        // A reservation past its time is not committed, even before a sweep reaches it; it
        // expires here instead. ($3, the time now, doubles as the bound.)
        let sql = match close {
            Close::Commit => {
                "UPDATE reservations SET state = $2, update_time_ms = $3, close_reason = $4 \
                 WHERE reservation_id = $1 AND state = 'ACTIVE' \
                 AND (expire_time_ms IS NULL OR expire_time_ms > $3)"
            }
            Close::Release | Close::Expire => {
                "UPDATE reservations SET state = $2, update_time_ms = $3, close_reason = $4 \
                 WHERE reservation_id = $1 AND state = 'ACTIVE'"
            }
        };
        let mut tx = self.db.write().begin().await?;
        let closed = sqlx::query(sql)
            .bind(reservation_id)
            .bind(target.as_str())
            .bind(now)
            .bind(close.reason())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if closed == 0 {
            tx.rollback().await?;
            let reservation = self.reservation(reservation_id).await?;
            if reservation.state == ReservationState::Active && close == Close::Commit {
                // Past its time: give the stock back, then refuse the commit.
                Box::pin(self.close(reservation_id, Close::Expire)).await?;
                return Err(Error::ReservationClosed {
                    reservation_id: reservation_id.to_owned(),
                    state: "EXPIRED",
                    action: close.verb(),
                });
            }
            if reservation.state == target && close != Close::Expire {
                return Ok((reservation, Applied::Earlier));
            }
            return Err(Error::ReservationClosed {
                reservation_id: reservation_id.to_owned(),
                state: if reservation.expired {
                    "EXPIRED"
                } else {
                    reservation.state.as_str()
                },
                action: close.verb(),
            });
        }
        let mut items: Vec<(String, i64)> = sqlx::query_as(
            "SELECT product_id, quantity FROM reservation_items WHERE reservation_id = $1",
        )
        .bind(reservation_id)
        .fetch_all(&mut *tx)
        .await?;
        items.sort();
        let sql = match close {
            Close::Release | Close::Expire => {
                "UPDATE stock SET available = available + $2, reserved = reserved - $2, update_time_ms = $3 WHERE product_id = $1"
            }
            Close::Commit => {
                "UPDATE stock SET reserved = reserved - $2, update_time_ms = $3 WHERE product_id = $1"
            }
        };
        for (product_id, quantity) in &items {
            sqlx::query(sql)
                .bind(product_id)
                .bind(quantity)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((self.reservation(reservation_id).await?, Applied::Now))
    }
}
