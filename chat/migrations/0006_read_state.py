"""Each member's read position in a room (issue 15, part 5)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0005_message_changes"),
    ]

    operations = [
        migrations.AddField(
            model_name="membership",
            name="last_read_seq",
            field=models.PositiveBigIntegerField(default=0),
        ),
        # Members from before read state have read everything so far: an upgrade does not
        # show every old message as unread.
        migrations.RunSQL(
            "UPDATE chat_membership SET last_read_seq = "
            "(SELECT last_seq FROM chat_room WHERE chat_room.id = chat_membership.room_id)",
            migrations.RunSQL.noop,
        ),
    ]
