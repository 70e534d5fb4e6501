"""invitation links and scheduled sending: set-password links, an invitation's mode and time

Revision ID: 0011_invite_links
Revises: 0010_leavers
Create Date: 2026-12-02 03:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0011_invite_links'
down_revision = '0010_leavers'
branch_labels = None
depends_on = None

MODES = "mode IN ('password', 'link')"


def upgrade():
    op.create_table(
        'set_password_links',
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('invitation_id', sa.Integer(), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('used_at', sa.DateTime(), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'live', 'used', 'superseded', 'refused')",
                           name=op.f('ck_set_password_links_link_state')),
        sa.ForeignKeyConstraint(['invitation_id'], ['invitations.id'],
                                name=op.f('fk_set_password_links_invitation_id_invitations'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_set_password_links_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('digest', name=op.f('pk_set_password_links')),
    )
    with op.batch_alter_table('set_password_links') as batch:
        batch.create_index(batch.f('ix_set_password_links_user_id'), ['user_id'])
        batch.create_index(batch.f('ix_set_password_links_invitation_id'), ['invitation_id'])
    with op.batch_alter_table('invitations') as batch:
        batch.add_column(sa.Column('mode', sa.String(length=16), nullable=False,
                                   server_default='password'))
        batch.add_column(sa.Column('scheduled_at', sa.DateTime(), nullable=True))
        batch.create_check_constraint(op.f('ck_invitations_invitation_mode'),
                                      MODES)
    with op.batch_alter_table('import_batches') as batch:
        batch.add_column(sa.Column('invite_mode', sa.String(length=16), nullable=False,
                                   server_default='password'))
        batch.create_check_constraint(op.f('ck_import_batches_batch_invite_mode'),
                                      MODES.replace('mode', 'invite_mode', 1))


def downgrade():
    with op.batch_alter_table('import_batches') as batch:
        batch.drop_constraint(op.f('ck_import_batches_batch_invite_mode'), type_='check')
        batch.drop_column('invite_mode')
    with op.batch_alter_table('invitations') as batch:
        batch.drop_constraint(op.f('ck_invitations_invitation_mode'), type_='check')
        batch.drop_column('scheduled_at')
        batch.drop_column('mode')
    with op.batch_alter_table('set_password_links') as batch:
        batch.drop_index(batch.f('ix_set_password_links_invitation_id'))
        batch.drop_index(batch.f('ix_set_password_links_user_id'))
    op.drop_table('set_password_links')
