"""login counters per account and address

Revision ID: 0007_sessions
Revises: 0006_profile_fields
Create Date: 2026-12-02 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_sessions'
down_revision = '0006_profile_fields'
branch_labels = None
depends_on = None


def upgrade():
    # The old keys named accounts by the typed username (sometimes a password typed in the wrong
    # field); the counters are short-lived, so they start again under the new keys.
    op.execute("DELETE FROM login_failures")
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_success_at', sa.DateTime(), nullable=True))


def downgrade():
    op.execute("DELETE FROM login_failures")
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.drop_column('last_success_at')

